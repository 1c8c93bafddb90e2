"""Does the frozen reference embedding carry distance below town level? Same-content item pairs differ only in
their location text; AUC of cosine(E_i, E_k) for pairs < 1 km vs pairs > 5 km apart (reference item_embeddings).

Run: ``python bench/reference_distance.py lgsid-work/phoenix/tables``. Reads the reference rows from the
parquet files pyarrow can read (delta-rs MERGE files use view types pyarrow 14 cannot). JSON last line.
"""
import sys, numpy as np
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score
from lgsid.geo import haversine_km
root=sys.argv[1]
gp=DeltaTable(f"{root}/geo_prompts").to_pandas()
import glob, pyarrow.parquet as pq
em=None
for f in glob.glob(f"{root}/item_embeddings/**/*.parquet", recursive=True):
    try: t=pq.read_table(f, columns=["item_id","model_version","embedding_f32"]).to_pandas()
    except Exception: continue  # delta-rs MERGE files use view types pyarrow 14 cannot read
    t=t[t.model_version=="reference"]; em=t if em is None else __import__("pandas").concat([em,t])
em=em.drop_duplicates("item_id", keep="last")
e=em.set_index("item_id")["embedding_f32"].rename("embedding")
df=gp.set_index("item_id").join(e, how="inner")
X=np.stack([np.frombuffer(v, dtype="<f4") for v in df.embedding]); X/=np.linalg.norm(X,axis=1,keepdims=True)
lat,lon=df.lat.to_numpy(),df.lon.to_numpy(); c=df.content_text.to_numpy(); town=df.town.to_numpy()
near,far,nt,ft=[],[],[],[]
for g in np.unique(c):
    ix=np.where(c==g)[0]
    if len(ix)<2: continue
    a,b=np.triu_indices(len(ix),1); a,b=ix[a],ix[b]
    d=haversine_km(lat[a],lon[a],lat[b],lon[b]); s=(X[a]*X[b]).sum(1)
    near+=list(s[d<1]); far+=list(s[d>5]); nt+=list(town[a][d<1]==town[b][d<1])
print(f"items {len(df)}: same-content pairs <1 km: {len(near)}, >5 km: {len(far)}; same town(loc level) among <1 km pairs {np.mean(nt):.2f}")
auc=roc_auc_score(np.r_[np.ones(len(near)),np.zeros(len(far))], np.r_[near,far]) if near and far else float("nan")
print(f"AUC cosine(ref) near(<1km) vs far(>5km): {auc:.3f}")
import json; print(json.dumps({"items": len(df), "pairs_lt_1km": len(near), "pairs_gt_5km": len(far), "auc_near_vs_far": round(float(auc), 3)}))
