"""Retrieval quality of the bundled ImageNet model on the shared real photo set."""

from __future__ import annotations

import pytest

from gunmatch.indexing import build, gallery_writer, scan_source
from gunmatch.search import SearchOptions, load_judge, search_image
from gunmatch.service import create_engine
from tests.helpers import SHARED_DATA

WEAPON_TYPES = SHARED_DATA / "weapon-types"


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(
    not (WEAPON_TYPES / "gallery").is_dir(),
    reason=f"real data not present at {WEAPON_TYPES} (only on the developers' machines)",
)
def test_weapon_types_top1_at_least_imagenet_baseline(tmp_path):
    engine = create_engine(tmp_path / "gal", threads=2, batch_size=32)
    records = scan_source(WEAPON_TYPES / "gallery")
    report = build(
        records,
        engine.embedder,
        gallery_writer(engine.gallery, engine.embedder.model_id),
        progress=False,
    )
    assert not report.failed
    queries = scan_source(WEAPON_TYPES / "queries")
    opts = SearchOptions(k=1)
    judge = load_judge(engine, opts.screening)
    results = [search_image(engine, r.label, r.path, opts, judge) for r in queries]
    correct = sum(r.matches[0].item.label == r.query for r in results if r.matches)
    accuracy = correct / len(queries)
    engine.close()
    # Measured 0.713 with efficientnet_lite0 + GeM(p=3), letterbox 224 (docs/benchmarks.md).
    assert accuracy >= 0.69, f"top-1 accuracy {accuracy:.3f}"
