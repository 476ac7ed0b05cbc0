"""Generated test inputs: group pictures with known faces, video clips."""
