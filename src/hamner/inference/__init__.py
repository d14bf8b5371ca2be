"""Tagging new posts (:mod:`hamner.inference.tagger`), files of them (:mod:`hamner.inference.stream`) and
the ONNX Runtime backend (:mod:`hamner.inference.onnx`). Importing this package imports none of them."""

# Words one post may have by default (``max_words``; here so that the CLI's parser reads it without
# importing torch). Cost grows with words: a post past the encoder's budget is read in overlapping
# windows, one per ~3/4 of the sub-token budget (2,000 "!" are 22 windows of 128 sub-tokens, 60,000 are
# ~640). Real posts stay far below (Twitter-2015/2017 and BTC: at most 57 words; a 280-character tweet
# has at most 280), so 1,000 refuses no real post and bounds one post at ~11 windows.
DEFAULT_MAX_WORDS = 1000
