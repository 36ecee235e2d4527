"""The reference workload in PyTorch: `torch.nn.LSTM` (the fused kernel), plus a straightforward
greedy loop and beam search over `torch.topk`. A benchmark peer, never imported by s2s_jax.

Shape legend: B batch, S source length, T target length, H hidden, V vocabulary, K beam.
"""

from __future__ import annotations

import numpy as np
import torch
import workload as w
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class TorchSeq2Seq(nn.Module):
  def __init__(self, hidden: int = w.HIDDEN):
    super().__init__()
    self.src_embedding = nn.Embedding(w.VOCAB, w.EMBED)
    self.tgt_embedding = nn.Embedding(w.VOCAB, w.EMBED)
    self.encoder = nn.LSTM(w.EMBED, hidden, w.LAYERS, batch_first=True)
    self.decoder = nn.LSTM(w.EMBED, hidden, w.LAYERS, batch_first=True)
    self.readout = nn.Linear(2 * hidden, hidden)
    self.output = nn.Linear(hidden, w.VOCAB)

  def load_flat(self, flat: dict[str, np.ndarray]) -> None:
    """Copies s2s_jax-layout weights (see workload.py) in; PyTorch's second LSTM bias is 0."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
      self.src_embedding.weight.copy_(t(flat["src_embedding"]))
      self.tgt_embedding.weight.copy_(t(flat["tgt_embedding"]))
      for name, lstm in (("encoder", self.encoder), ("decoder", self.decoder)):
        for k in range(w.LAYERS):
          getattr(lstm, f"weight_ih_l{k}").copy_(t(flat[f"{name}/layer_{k}/W_i"].T))
          getattr(lstm, f"weight_hh_l{k}").copy_(t(flat[f"{name}/layer_{k}/W_h"].T))
          getattr(lstm, f"bias_ih_l{k}").copy_(t(flat[f"{name}/layer_{k}/b_i"]))
          getattr(lstm, f"bias_hh_l{k}").zero_()
      for name in ("readout", "output"):
        getattr(self, name).weight.copy_(t(flat[f"{name}/W"].T))
        getattr(self, name).bias.copy_(t(flat[f"{name}/b"]))

  def encode(self, src_BS: torch.Tensor):
    mask_BS = src_BS != w.PAD
    packed = pack_padded_sequence(self.src_embedding(src_BS), mask_BS.sum(1).cpu(),
                                  batch_first=True, enforce_sorted=False)
    out, state = self.encoder(packed)
    memory_BSH, _ = pad_packed_sequence(out, batch_first=True, total_length=src_BS.shape[1])
    return memory_BSH, state, mask_BS

  def attend(self, h_BTH, memory_BSH, mask_BS):
    scores = torch.bmm(h_BTH, memory_BSH.transpose(1, 2))
    weights = torch.softmax(scores.masked_fill(~mask_BS[:, None, :], float("-inf")), dim=-1)
    context = torch.bmm(weights, memory_BSH)
    return self.output(torch.tanh(self.readout(torch.cat([h_BTH, context], dim=-1))))

  def forward(self, src_BS, tgt_in_BT):
    memory, state, mask = self.encode(src_BS)
    h_BTH, _ = self.decoder(self.tgt_embedding(tgt_in_BT), state)
    return self.attend(h_BTH, memory, mask)

  def step(self, token_N, state, memory, mask):
    h_N1H, state = self.decoder(self.tgt_embedding(token_N[:, None]), state)
    return self.attend(h_N1H, memory, mask)[:, 0], state


def loss(model: TorchSeq2Seq, batch: dict[str, np.ndarray]) -> torch.Tensor:
  device = next(model.parameters()).device
  src, tgt_in, target = (torch.from_numpy(batch[k]).long().to(device)
                         for k in ("src", "tgt_in", "tgt_out"))
  logits = model(src, tgt_in)
  total = nn.functional.cross_entropy(logits.reshape(-1, w.VOCAB), target.reshape(-1),
                                      ignore_index=w.PAD, reduction="sum")
  return total / (target != w.PAD).sum()


def make_train_step(model: TorchSeq2Seq):
  optimizer = torch.optim.Adam(model.parameters(), lr=w.LEARNING_RATE)

  def step(batch):
    optimizer.zero_grad(set_to_none=True)
    value = loss(model, batch)
    value.backward()
    optimizer.step()
    return value
  return step


@torch.no_grad()
def greedy(model: TorchSeq2Seq, src_BS: torch.Tensor, max_length: int) -> torch.Tensor:
  memory, state, mask = model.encode(src_BS)
  B = src_BS.shape[0]
  token = torch.full((B,), w.BOS, dtype=torch.long, device=src_BS.device)
  done = torch.zeros(B, dtype=torch.bool, device=src_BS.device)
  out = torch.full((B, max_length), w.PAD, dtype=torch.long, device=src_BS.device)
  for t in range(max_length):
    logits, state = model.step(token, state, memory, mask)
    token = torch.where(done, w.PAD, logits.argmax(-1))
    out[:, t] = token
    done |= token == w.EOS
    if bool(done.all()):
      break
  return out


@torch.no_grad()
def beam_search(model: TorchSeq2Seq, src_BS: torch.Tensor, beam_size: int, max_length: int
                ) -> torch.Tensor:
  """Plain beam search (no length penalty): K live hypotheses per sentence, the best finished
  one kept; a sentence stops when its best live score falls below its best finished score."""
  K = beam_size
  memory, (h, c), mask = model.encode(src_BS)
  B = src_BS.shape[0]
  memory = memory.repeat_interleave(K, 0)
  mask = mask.repeat_interleave(K, 0)
  state = (h.repeat_interleave(K, 1), c.repeat_interleave(K, 1))
  alive = torch.full((B, K), float("-inf"), device=src_BS.device)
  alive[:, 0] = 0.0
  seqs = torch.full((B, K, max_length), w.PAD, dtype=torch.long, device=src_BS.device)
  token = torch.full((B * K,), w.BOS, dtype=torch.long, device=src_BS.device)
  best_score = torch.full((B,), float("-inf"), device=src_BS.device)
  best_seq = torch.full((B, max_length), w.PAD, dtype=torch.long, device=src_BS.device)
  rows = torch.arange(B, device=src_BS.device)[:, None]
  neg_inf = torch.tensor(float("-inf"), device=src_BS.device)
  for t in range(max_length):
    logits, state = model.step(token, state, memory, mask)
    V = logits.shape[-1]
    cand = (alive[:, :, None] + torch.log_softmax(logits, -1).view(B, K, V)).view(B, K * V)
    top, index = torch.topk(cand, 2 * K, dim=-1)
    parent, tok = index // V, index % V
    ends = (tok == w.EOS) | (t == max_length - 1)
    finished = torch.where(ends, top, neg_inf)
    f_score, f_pos = finished.max(-1)
    better = f_score > best_score
    new_seq = seqs[rows, parent].clone()
    new_seq[:, :, t] = tok
    best_seq = torch.where(better[:, None], new_seq[rows[:, 0], f_pos], best_seq)
    best_score = torch.maximum(best_score, f_score)
    alive, pick = torch.topk(torch.where(ends, neg_inf, top), K, dim=-1)
    seqs = new_seq[rows, pick]
    token = tok[rows, pick].reshape(B * K)
    order = (rows * K + parent[rows, pick]).reshape(B * K)
    state = (state[0][:, order], state[1][:, order])
    if bool((alive.max(-1).values <= best_score).all()):
      break
  return best_seq
