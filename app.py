"""The dashboard from a clone: ``streamlit run app.py [-- --storage URL --results-dir DIR]``.

The app itself is ``mobilenet_search/ui/app.py``, inside the package so that a wheel carries it and
``mobilenet-search dashboard`` starts it; this file runs that same app on each of Streamlit's reruns.
"""

import runpy

from mobilenet_search.ui.dashboard import APP_PATH

runpy.run_path(str(APP_PATH), run_name="__main__")
