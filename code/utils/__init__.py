"""Picture4Video's shared library: every task script in ``code/`` is a thin command line over these modules.

Data flows one way: video -> keyframes -> catalogue -> embeddings -> vector store -> search -> report.
"""
