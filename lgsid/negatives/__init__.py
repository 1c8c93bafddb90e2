"""Distance-ranked, density-aware negatives and the reward lists (step ``negatives``; Eq. 1, Eq. 3).

For every anchor item we want K *mismatched locations*: locations (towns) other than the anchor's
own, sorted near -> far, so the reward model learns that a wrong town next door is less wrong
than a wrong town across the country (Eq. 1), with soft labels from the rank (Eq. 3).

Definitions (the tests check the Spark job against a brute-force numpy version of exactly these):

* A **location** is a qualified town ``state|county|town`` (``prompts.location_level`` town, the
  paper) or, at district level (city-scale data), a district ``state|county|town|location_text``
  (:func:`lgsid.prompts.location_keys`); its text is the item's ``location_text``. Its **region**
  is the level above: the county (``state|county``) at town level, the town at district level.
  Below, "town" reads "location" and "county" reads "region" at district level. The anchor's own location is never a candidate, and each location appears at
  most once per list (the list is not K copies of the same town).
* A location's **representative** is its medoid item: the item nearest (haversine) to the mean
  position of the town's items (mean of 3-D unit vectors), ties broken by ``item_id``. The
  candidate's ``cand_item_id``/``distance_km`` are those of the representative. Using one point per
  town keeps the search index as small as the number of towns, whatever the number of shops, and makes ``distance_km`` "how far is that town", not "how far is its nearest shop".
* **Near set**: the ``K - n_far`` nearest representatives by ``(distance_km, cand_item_id)``,
  excluding those closer than ``min_near_distance_km``.
* **Far set**: ``n_far`` representatives drawn at random among towns in *other counties*
  (``state|county`` differs) and not in the near set: the first valid draws of a counter-based
  hash of (seed, anchor, draw number), so independent of Spark partitioning (:func:`far_draws`).
  When fewer than ``K - n_far`` eligible near locations exist at all, the far set grows so the
  list still has K entries.
* The K candidates are ranked 1..K by ``(distance_km, cand_item_id)`` over near and far together.

Scaling (never a cross join): the representatives (one per town, so thousands to ~150k rows
whatever the number of items) are indexed once on the driver in a k-d tree over unit vectors
(:class:`TownIndex`) and broadcast. Anchors stay in Spark: a ``mapInArrow`` searches each partition
(:func:`search_near`, exact k-nearest) and draws its far sets (:func:`far_draws`).

Modules: :mod:`~lgsid.negatives.towns` (location keys, representatives), :mod:`~lgsid.negatives.search`
(near set), :mod:`~lgsid.negatives.far` (far set), :mod:`~lgsid.negatives.labels` (Eq. 3),
:mod:`~lgsid.negatives.mine` (the Spark job: ranked lists, reward lists). The step is
:mod:`lgsid.steps.negatives`.
"""

from lgsid.negatives.far import far_draws
from lgsid.negatives.labels import soft_labels, soft_labels_col
from lgsid.negatives.mine import NEGATIVES_SCHEMA, build_reward_lists, mine_negatives, negatives_table
from lgsid.negatives.search import TownIndex, search_near
from lgsid.negatives.towns import town_representatives

__all__ = [
    "NEGATIVES_SCHEMA", "TownIndex", "build_reward_lists", "far_draws", "mine_negatives", "negatives_table",
    "search_near", "soft_labels", "soft_labels_col", "town_representatives",
]
