"""The clone's top level: ``app.py`` runs the packaged dashboard, ``search_spaces/`` holds the shipped spaces.

The wheel side (both land inside ``mobilenet_search/``) is ``tests/test_wheel.py``'s.
"""

from pathlib import Path

from streamlit.testing.v1 import AppTest
from synthetic import create_synthetic_study

from mobilenet_search.search.space import SPACES_DIR, available_spaces, load_space
from mobilenet_search.ui import dashboard as board

ROOT = Path(__file__).resolve().parent.parent


def test_streamlit_run_app_py_from_the_clone_shows_the_packaged_dashboard(monkeypatch, tmp_path):
    create_synthetic_study(f"sqlite:///{tmp_path / 'demo.db'}", "demo", 12, seed=1)
    monkeypatch.setenv(board.RESULTS_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(board.STORAGE_ENV, raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.main.title[0].value == "Study demo"
    assert at.get_by_key("frontier").proto.spec  # the packaged app's frontier, drawn
    at.selectbox(key="trial").select(at.selectbox(key="trial").options[0]).run()  # a rerun runs the app again
    assert not at.exception and at.main.title[0].value == "Study demo"


def test_the_shipped_spaces_are_the_top_level_search_spaces_files():
    files = sorted(p.stem for p in (ROOT / "search_spaces").glob("*.yaml"))
    assert SPACES_DIR.resolve() == (ROOT / "search_spaces").resolve()
    assert available_spaces() == files and {"mobilenetv2", "mobilenetv1", "tiny"} <= set(files)
    assert load_space("tiny").size == 192
    assert not (ROOT / "mobilenet_search" / "spaces").exists()  # one copy, where a user opens and copies it
