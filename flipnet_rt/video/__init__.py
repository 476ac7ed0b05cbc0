"""Video: streaming face restoration with bounded memory, copied audio and one seed per face track.

Needs PyAV (``pip install 'flipnet-rt[video]'``); nothing here imports it until a video is opened.

- :func:`~.transcode.transcode`: decode → process → encode in overlapping threads over bounded
  queues; the other streams copied packet for packet; output renamed into place when complete.
- :class:`~.pipeline.VideoRestorer`: the face processor (detect, track, smooth, batch, restore,
  paste, on one or several engine workers); feed frames and pull restored ones, or hand it to
  ``transcode``.
- :mod:`.regions`: faces found again near their tracks' predictions between full-frame searches.
"""
