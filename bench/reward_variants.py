"""Reward variants on a sample of a run's reward lists, embedded once with the frozen reference encoder.

* Eq. 2 as trained by :func:`lgsid.reward.train_reward_model` (``r = MLP(E([content_i, location_j]))``);
* the anchor-conditioned reward ``r = MLP([E_j, E_true * E_j])`` (``reward.conditioning=anchor``,
  the same trainer; with the true prompt in the input, true vs candidate is trivial, so every row
  is scored on the 3 nearest vs the 3 farthest candidates of held-out lists);
* the frozen reference itself: ``cos(E_true, E_j)``.

Run: ``python bench/reward_variants.py <tables> <lists> <out.npz> [conf.yaml]`` (e.g.
``lgsid-work/phoenix/tables 320 /tmp/lists.npz conf/phoenix.yaml``; 320 lists = 5,440 prompts,
~7 min on 2 loaded cores). Plain-text lines; not a speed benchmark.
"""
import os, sys, time
import numpy as np, torch
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score
from lgsid.config import load_config, replace
from lgsid.encoder import load_encoder
from lgsid.reward import ListBatch, train_reward_model

tables, n_lists, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = load_config(sys.argv[4] if len(sys.argv) > 4 else None)
if not os.path.exists(out):
    torch.set_num_threads(2)
    enc = load_encoder(base.encoder)
    rl = DeltaTable(tables + "/reward_lists").to_pandas().sort_values("item_id").sample(n=n_lists, random_state=0)
    t0 = time.time()
    E = enc.encode([p for ps in rl.prompts for p in ps]).reshape(len(rl), -1, enc.dim)
    print(f"embedded {E.shape[0] * E.shape[1]} prompts in {time.time() - t0:.0f} s")
    np.savez(out, emb=E, labels=np.stack(rl.soft_labels.map(np.asarray)).astype(np.float32), ids=rl.item_id.to_numpy())
z = np.load(out, allow_pickle=True)
E, lab = z["emb"].astype(np.float32), z["labels"]
L,J,D=E.shape; mask=np.ones((L,J),bool)
data=ListBatch(z["ids"], E, lab, mask)
def cand_auc(S, idx):  # nearest-3 vs farthest-3 candidates (true entry excluded)
    near=S[idx,1:4].ravel(); far=S[idx,-3:].ravel()
    return roc_auc_score(np.r_[np.ones(near.size),np.zeros(far.size)], np.r_[near,far])
for name, rc, fn in (("eq2 (config epochs, patience)", {"conditioning": "none"}, train_reward_model), ("eq2 100 epochs, patience 3", {"epochs":100,"patience":3,"conditioning": "none"}, train_reward_model)):
    cfg=replace(base, reward=rc)
    model, m = fn(data, cfg)
    m.setdefault("best_epoch", -1); m.setdefault("val_auc_true_vs_near", float("nan"))
    perm=np.random.default_rng(cfg.reward.seed).permutation(L); val=perm[:int(round(0.2*L))]
    with torch.no_grad(): S=model(torch.from_numpy(E)).numpy()
    print(f"{name}: val_loss {m['reward_val_loss']:.4f} best_epoch {m['best_epoch']} val AUC true-vs-far {m['val_auc_true_vs_far']:.3f} true-vs-near {m['val_auc_true_vs_near']:.3f} near-vs-far cand {cand_auc(S,val):.3f} train AUC far {m['train_auc_true_vs_far']:.3f}")
# anchor-conditioned reward, as the pipeline trains it (reward.conditioning=anchor): r = MLP([E_j, E_true * E_j])
cfg = replace(base, reward={"conditioning": "anchor"})
model, m = train_reward_model(data, cfg)
perm = np.random.default_rng(cfg.reward.seed).permutation(L); val, tr = perm[:int(round(0.2 * L))], perm[int(round(0.2 * L)):]
with torch.no_grad(): S = model(torch.from_numpy(E), torch.from_numpy(E[:, :1])).numpy()
print(f"anchor-conditioned (reward.conditioning=anchor): val_loss {m['reward_val_loss']:.4f} best_epoch {m['best_epoch']} near-vs-far cand val {cand_auc(S,val):.3f} train {cand_auc(S,tr):.3f}")
# the frozen reference itself: cosine(E_true, E_j) as the score
C=np.einsum("ljd,ld->lj", E, E[:,0])
print(f"reference cosine(E_true, E_j): near-vs-far cand val {cand_auc(C,val):.3f}")
