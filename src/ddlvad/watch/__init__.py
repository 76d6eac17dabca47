"""``ddlvad watch``: a long-running service that scores many cameras, keeps their events and tells people.

Modules:

- :mod:`ddlvad.watch.config`: the YAML file that lists the cameras (and the database, media folder,
  retention, HTTP, webhook and MQTT settings); every problem of it is reported before anything starts.
- :mod:`ddlvad.watch.store`: the events and threshold changes in SQLite, the media paths under the data
  folder (snapshots and clips), retention.
- readers (to come): one thread per camera that reads frames at the configured rate (looping trial files).
- notify (to come): webhook and MQTT messages of opened and closed events, with an on-disk outbox.
- service (to come): the loop that ties readers, models, event trackers, the store and notifications together.
- web (to come): the page that lists events, serves their snapshots and clips and takes reviews.

This package imports neither torch nor OpenCV at import time.
"""
