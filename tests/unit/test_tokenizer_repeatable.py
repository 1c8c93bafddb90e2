"""A tokenizer fit repeats bit for bit at 2 torch threads (deterministic codebook training, single-threaded k-means)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lgsid.config import TokenizerConfig
from lgsid.tokenizer import build_tokenizer
from lgsid.tokenizer.toy import toy_catalogue


@pytest.mark.parametrize("kind", ["hgit", "rqkmeans", "rqvae"])
def test_fits_at_two_threads_repeat_bit_for_bit(kind):
    items, emb = toy_catalogue(3000, 32, seed=0)
    cfg = TokenizerConfig(kind=kind, epochs=2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the gradients of a codebook gather were summed in thread order before
    try:
        fits = [build_tokenizer(cfg).fit(emb, items) for _ in range(3)]
    finally:
        torch.set_num_threads(before)
    states = [f.state()[0] for f in fits]
    for s in states[1:]:
        assert s.keys() == states[0].keys()
        for k in s:
            np.testing.assert_array_equal(np.asarray(s[k]), np.asarray(states[0][k]), err_msg=k)
    np.testing.assert_array_equal(fits[1].encode(emb, items), fits[0].encode(emb, items))
    assert not torch.are_deterministic_algorithms_enabled()  # the fit leaves torch's global mode as it found it
