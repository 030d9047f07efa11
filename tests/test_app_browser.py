"""End to end: `streamlit run app.py` on loopback, driven by headless Debian Chromium through
Playwright. Every page loads with no exception element and its charts render; screenshots are
saved (to $STUDY_SCREENSHOTS when set, else the test's temp folder)."""

import os
from pathlib import Path

import pytest

from study.app.screenshots import CHROMIUM, serve, visit_pages

pytestmark = pytest.mark.timeout(300)


def test_every_page_renders_in_headless_chromium(app_lake, tmp_path):
    assert Path(CHROMIUM).exists(), "apt-get install chromium (scripts/setup.sh does)"
    out = Path(os.environ.get("STUDY_SCREENSHOTS", tmp_path / "screenshots"))
    with serve(app_lake) as url:
        visits = {
            v.name: v
            for v in visit_pages(
                url,
                out,
                min_charts={"strategies": 5, "search": 3, "lineage": 2, "stability": 3, "masks": 1, "sequences": 4},
            )
        }
    assert set(visits) == {"strategies", "search", "lineage", "stability", "masks", "sequences", "data"}
    for name, visit in visits.items():
        assert visit.exceptions == 0, name
        assert visit.screenshot.stat().st_size > 10_000, name
    assert visits["strategies"].title == "Strategies" and visits["strategies"].charts >= 2
    assert visits["search"].charts >= 3 and visits["lineage"].charts >= 2 and visits["sequences"].charts >= 4
    assert visits["sequences"].title == "Sequence models" and visits["stability"].title == "Stability"
    assert visits["stability"].charts >= 3
