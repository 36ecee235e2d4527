"""Token ids reserved in every vocabulary of the project."""

PAD_ID = 0  # padding; masked out of attention, losses and metrics
BOS_ID = 1  # begin of sequence: the first decoder input
EOS_ID = 2  # end of sequence: the last decoder target
UNK_ID = 3  # out-of-vocabulary token
NUM_SPECIAL_IDS = 4
