"""Keeping a champion ready to score: lean scorer, local cache, hot swap and the prediction-log writer.

The web layer builds on this package; it never imports training code, flows or Evidently.
"""
