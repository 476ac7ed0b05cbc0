"""What can go wrong with a video, as one exception that names the file and the fix."""

from __future__ import annotations


class VideoError(ValueError):
    """An input video that cannot be restored (not a video, truncated, unsupported codec) or an
    output that cannot be written. The message is one line naming the file and the fix; the
    command line prints it and exits with status 1, leaving nothing half-written."""
