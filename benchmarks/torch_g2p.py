"""The g2p workload's model in PyTorch, written the way PyTorch seq2seq toolkits (JoeyNMT,
OpenNMT-py) write an RNN encoder-decoder: a packed bidirectional `nn.LSTM` encoder, a decoder loop
of `nn.LSTMCell` with input feeding and Luong 'general' attention at every step, a readout, the
output projection over all steps at once, masked label-smoothed cross-entropy, Adam with gradient
clipping; greedy decoding and beam search as Python loops over decoder steps. A benchmark peer,
never imported by s2s_jax.

It computes s2s_jax's math for `configs/g2p.py` exactly (1 encoder and 1 decoder layer, the
encoder's merged final states copied into the decoder, dropout on embeddings and before the
output projection), so s2s_jax's weights load into it and give the same loss.

Shape legend: B batch, S source length, T target length, E embedding, H decoder hidden,
D = 2 x encoder hidden (memory), R readout (= H), V target vocabulary, K beam.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, BOS, EOS = 0, 1, 2


class TorchG2P(nn.Module):
  def __init__(self, m: dict):
    super().__init__()
    if m["encoder_layers"] != 1 or m["decoder_layers"] != 1 or not m["input_feeding"]:
      raise ValueError("the peer implements the configs/g2p.py architecture only")
    E, H, He = m["embed_size"], m["hidden_size"], m["encoder_hidden_size"]
    self.H, self.D = H, 2 * He
    self.src_embedding = nn.Embedding(m["src_vocab_size"], E)
    self.tgt_embedding = nn.Embedding(m["tgt_vocab_size"], E)
    self.encoder = nn.LSTM(E, He, batch_first=True, bidirectional=True)
    self.key_layer = nn.Linear(self.D, H, bias=False)  # Luong general: keys = memory W_a
    self.cell = nn.LSTMCell(E + H, H)  # input: [embedding; previous readout]
    self.readout = nn.Linear(H + self.D, H)
    self.output = nn.Linear(H, m["tgt_vocab_size"])
    self.dropout = nn.Dropout(m["dropout"])

  def load_flat(self, flat: dict[str, np.ndarray]) -> None:
    """s2s_jax's parameters ('encoder/layer_0/fw/W_i', ... as in benchmarks/workload.py)."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
      self.src_embedding.weight.copy_(t(flat["src_embedding"]))
      self.tgt_embedding.weight.copy_(t(flat["tgt_embedding"]))
      for suffix, direction in (("", "fw"), ("_reverse", "bw")):
        p = f"encoder/layer_0/{direction}"
        getattr(self.encoder, f"weight_ih_l0{suffix}").copy_(t(flat[f"{p}/W_i"].T))
        getattr(self.encoder, f"weight_hh_l0{suffix}").copy_(t(flat[f"{p}/W_h"].T))
        getattr(self.encoder, f"bias_ih_l0{suffix}").copy_(t(flat[f"{p}/b_i"]))
        getattr(self.encoder, f"bias_hh_l0{suffix}").zero_()
      self.key_layer.weight.copy_(t(flat["attention/W_a"].T))
      self.cell.weight_ih.copy_(t(flat["decoder/layer_0/W_i"].T))
      self.cell.weight_hh.copy_(t(flat["decoder/layer_0/W_h"].T))
      self.cell.bias_ih.copy_(t(flat["decoder/layer_0/b_i"]))
      self.cell.bias_hh.zero_()
      for name in ("readout", "output"):
        getattr(self, name).weight.copy_(t(flat[f"{name}/W"].T))
        getattr(self, name).bias.copy_(t(flat[f"{name}/b"]))

  def encode(self, src_BS: torch.Tensor):
    """(memory_BSD, keys_BSH, mask_BS, decoder initial (h, c))."""
    mask_BS = src_BS != PAD
    emb = self.dropout(self.src_embedding(src_BS))
    packed = pack_padded_sequence(emb, mask_BS.sum(1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    out, (h_2BH, c_2BH) = self.encoder(packed)
    memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src_BS.shape[1])
    # Forward and backward final states concatenated: the decoder's initial state.
    state = (torch.cat([h_2BH[0], h_2BH[1]], -1), torch.cat([c_2BH[0], c_2BH[1]], -1))
    return memory, self.key_layer(memory), mask_BS, state

  def step(self, emb_BE, state, feed_BR, memory, keys, mask):
    """One decoder step: (readout r_BR, new (h, c))."""
    h, c = self.cell(torch.cat([emb_BE, feed_BR], -1), state)
    scores = torch.bmm(keys, h.unsqueeze(2)).squeeze(2).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, -1)
    context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
    return torch.tanh(self.readout(torch.cat([h, context], -1))), (h, c)

  def forward(self, src_BS, tgt_in_BT):
    memory, keys, mask, state = self.encode(src_BS)
    emb_BTE = self.dropout(self.tgt_embedding(tgt_in_BT))
    feed = emb_BTE.new_zeros(src_BS.shape[0], self.H)
    readouts = []
    for t in range(tgt_in_BT.shape[1]):
      feed, state = self.step(emb_BTE[:, t], state, feed, memory, keys, mask)
      readouts.append(feed)
    return self.output(self.dropout(torch.stack(readouts, 1)))


def loss(model: TorchG2P, batch: dict[str, np.ndarray], label_smoothing: float) -> torch.Tensor:
  """s2s_jax's per-token loss: (1 - eps) on the gold token, eps / (V - 1) on each other one."""
  device = next(model.parameters()).device
  src, tgt_in, target = (torch.from_numpy(batch[k]).long().to(device)
                         for k in ("src", "tgt_in", "tgt_out"))
  logits = model(src, tgt_in)
  logp = torch.log_softmax(logits, -1)
  gold = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
  others = logp.sum(-1) - gold
  V = logits.shape[-1]
  per_token = -(1 - label_smoothing) * gold - label_smoothing / (V - 1) * others
  real = target != PAD
  return (per_token * real).sum() / real.sum()


def make_train_step(model: TorchG2P, learning_rate: float, clip_norm: float,
                    label_smoothing: float):
  optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step(batch):
    optimizer.zero_grad(set_to_none=True)
    value = loss(model, batch, label_smoothing)
    value.backward()
    if clip_norm:
      nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return value
  return step


@torch.no_grad()
def greedy(model: TorchG2P, src_BS: torch.Tensor, max_length: int) -> torch.Tensor:
  memory, keys, mask, state = model.encode(src_BS)
  B = src_BS.shape[0]
  token = torch.full((B,), BOS, dtype=torch.long, device=src_BS.device)
  feed = memory.new_zeros(B, model.H)
  done = torch.zeros(B, dtype=torch.bool, device=src_BS.device)
  out = torch.full((B, max_length), PAD, dtype=torch.long, device=src_BS.device)
  for t in range(max_length):
    feed, state = model.step(model.tgt_embedding(token), state, feed, memory, keys, mask)
    token = torch.where(done, PAD, model.output(feed).argmax(-1))
    out[:, t] = token
    done |= token == EOS
    if bool(done.all()):
      break
  return out


@torch.no_grad()
def beam_search(model: TorchG2P, src_BS: torch.Tensor, beam_size: int, max_length: int
                ) -> torch.Tensor:
  """Plain beam search (no length penalty): K live hypotheses per sentence, the best finished
  one kept; a sentence stops when its best live score falls below its best finished score."""
  K = beam_size
  memory, keys, mask, (h, c) = model.encode(src_BS)
  B = src_BS.shape[0]
  memory, keys, mask = (x.repeat_interleave(K, 0) for x in (memory, keys, mask))
  state = (h.repeat_interleave(K, 0), c.repeat_interleave(K, 0))
  feed = memory.new_zeros(B * K, model.H)
  alive = torch.full((B, K), float("-inf"), device=src_BS.device)
  alive[:, 0] = 0.0
  seqs = torch.full((B, K, max_length), PAD, dtype=torch.long, device=src_BS.device)
  token = torch.full((B * K,), BOS, dtype=torch.long, device=src_BS.device)
  best_score = torch.full((B,), float("-inf"), device=src_BS.device)
  best_seq = torch.full((B, max_length), PAD, dtype=torch.long, device=src_BS.device)
  rows = torch.arange(B, device=src_BS.device)[:, None]
  neg_inf = torch.tensor(float("-inf"), device=src_BS.device)
  for t in range(max_length):
    feed, state = model.step(model.tgt_embedding(token), state, feed, memory, keys, mask)
    logits = model.output(feed)
    V = logits.shape[-1]
    cand = (alive[:, :, None] + torch.log_softmax(logits, -1).view(B, K, V)).view(B, K * V)
    top, index = torch.topk(cand, 2 * K, dim=-1)
    parent, tok = index // V, index % V
    ends = (tok == EOS) | (t == max_length - 1)
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
    state, feed = (state[0][order], state[1][order]), feed[order]
    if bool((alive.max(-1).values <= best_score).all()):
      break
  return best_seq
