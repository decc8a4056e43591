"""Thin clients of the library: the command line and the Streamlit dashboard."""
