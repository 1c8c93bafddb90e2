"""embedding_f32: float32 bytes <-> (N, D) matrix, with errors naming the items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.embedding_f32 import decode_f32, encode_f32
from lgsid.errors import ValidationError


def test_round_trip_is_exact_little_endian_float32():
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float64)
    b = encode_f32(x)
    assert len(b) == 5 and all(isinstance(v, bytes) and len(v) == 12 for v in b)
    assert b[1] == x[1].astype("<f4").tobytes()
    got = decode_f32(pd.Series(b), 3)
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    # also from a list and from bytearrays; per-row decoding agrees with np.frombuffer of each value
    np.testing.assert_array_equal(decode_f32([bytearray(v) for v in b], 3), np.stack([np.frombuffer(v, "<f4") for v in b]))


def test_empty_batch():
    assert encode_f32(np.zeros((0, 4))) == []
    assert decode_f32(pd.Series([], dtype=object), 4).shape == (0, 4)


def test_wrong_length_and_null_name_the_items():
    b = encode_f32(np.ones((3, 4)))
    ids = pd.Series(["a", "b", "c"])
    with pytest.raises(ValidationError, match=r"column 'embedding_f32' must hold 16 bytes \(float32 × dim 4\) per item; item\(s\) \['b'\] hold \[12\] bytes"):
        decode_f32(pd.Series([b[0], b[1][:12], b[2]]), 4, ids)
    # a batch whose total length is a multiple of 4·dim is still caught row by row
    with pytest.raises(ValidationError, match=r"item\(s\) \['a', 'b'\] hold \[8, 24\] bytes"):
        decode_f32(pd.Series([b[0][:8], b[1] + b[1][:8], b[2]]), 4, ids)
    with pytest.raises(ValidationError, match=r"column 'embedding_f32' is null for item\(s\) \['c'\]"):
        decode_f32(pd.Series([b[0], b[1], None]), 4, ids)
    with pytest.raises(ValidationError, match=r"item\(s\) \[1\]"):  # no ids: row positions
        decode_f32([b[0], b[1][:4]], 4)
