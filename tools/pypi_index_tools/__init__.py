"""Host-side helpers of the pypi_index role, run as python -m pypi_index_tools.<module>."""
