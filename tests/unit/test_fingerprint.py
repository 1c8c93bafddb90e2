from lgsid.fingerprint import fingerprint


def test_fingerprint_ignores_key_order_and_sees_every_value():
    a = fingerprint({"tokenizer": {"kind": "hgit", "levels": 3}}, {"item_embeddings": 4})
    b = fingerprint({"tokenizer": {"levels": 3, "kind": "hgit"}}, {"item_embeddings": 4})
    assert a == b and len(a) == 16
    assert fingerprint({"tokenizer": {"kind": "hgit", "levels": 4}}, {"item_embeddings": 4}) != a
    assert fingerprint({"tokenizer": {"kind": "hgit", "levels": 3}}, {"item_embeddings": 5}) != a
