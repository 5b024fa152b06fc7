"""Models: backbone loading, exit heads, the MS-BERT classifier task."""
