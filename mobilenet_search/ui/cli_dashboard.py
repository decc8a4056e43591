"""The ``mobilenet-search dashboard`` subcommand: runs the Streamlit app (``app.py``) in the foreground.

Streamlit is a child process: Ctrl-C or a SIGTERM to ``mobilenet-search`` stops it too.

``cli.py`` wires it in with ``add_dashboard_command(sub)``; the work is
:func:`mobilenet_search.ui.dashboard.run_dashboard`.
"""

from __future__ import annotations

import argparse

from mobilenet_search.ui.cli_types import integer


def _dashboard(args: argparse.Namespace) -> int:
    from mobilenet_search.errors import require

    require("streamlit", "dashboard", "the dashboard")
    require("plotly", "dashboard", "the dashboard")
    from mobilenet_search.ui.dashboard import run_dashboard

    if args.address is not None:
        _check_address(args.address)
    if args.storage is not None:
        from mobilenet_search.search.storage import check_storage_url

        check_storage_url(args.storage)  # an in-memory database would show nothing

    return run_dashboard(storage=args.storage, port=args.port, results_dir=args.results_dir, address=args.address)


def _check_address(address: str) -> None:
    """Refuse an address this machine cannot serve on (not an IP address or a resolvable host name)."""
    import socket

    from mobilenet_search.errors import UserError

    try:
        socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UserError(f"invalid --address {address!r}: not an IP address or host name of this network ({exc})") \
            from None


def add_dashboard_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dashboard [--storage URL] [--port N] [--address HOST] [--results-dir DIR]`` to the subparsers."""
    parser = subparsers.add_parser(
        "dashboard", help="browse studies in a web dashboard (Streamlit): frontier, trials, study health",
        description="Start the Streamlit dashboard (the same app as `streamlit run app.py`): the accuracy vs "
                    "MAdds/latency/parameters frontier, the trial table, each trial's architecture and training "
                    "curve, and the study's health. It serves this machine only unless --address says otherwise. "
                    "Ctrl-C or SIGTERM stops it (and the Streamlit server with it).",
        epilog="Examples: mobilenet-search dashboard;  "
               "mobilenet-search dashboard --storage postgresql://user:pass@host/db --port 8502",
    )
    parser.add_argument("--storage", default=None,
                        help="an Optuna storage URL to open first (default: the studies found under --results-dir)")
    parser.add_argument("--port", type=integer(1, 65535), default=None,
                        help="the port to serve on (default: Streamlit's, 8501)")
    parser.add_argument("--address", default=None,
                        help="the address to serve on (default 127.0.0.1: this machine only); 0.0.0.0 serves every "
                             "network interface, so anyone who can reach this machine sees the studies")
    parser.add_argument("--results-dir", default="results", help="where to look for study files (*.db, *.journal)")
    parser.set_defaults(run=_dashboard)
