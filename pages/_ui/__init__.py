"""Streamlit-side helpers shared by the pages: state keys, cached loaders, widgets, figures.

Dependencies point one way: pages -> ``pages._ui`` -> ``xai_core``. Nothing here does
tensor maths; it calls ``xai_core`` and arranges the results on screen.
"""
