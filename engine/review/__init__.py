"""The review loop: an analyst checks the model's doubtful calls, the answers become data, a run is retrained on it,
compared with the run it corrects, and promoted to a feed.

- :mod:`engine.review.items`: what gets reviewed (a feed's least confident articles, an evaluated file's mistakes
  and low-confidence rows, anything flagged), one item at a time under a lease, answers stored at once.
- :mod:`engine.review.corrections`: reviewed items -> a new dataset version (validation and test rows carried over
  untouched, the label order unchanged), the retrain with the corrected run's settings, and the comparison.
- :mod:`engine.review.promote`: a feed's current model (``feeds.current_model``) and the history of promotions.
"""
