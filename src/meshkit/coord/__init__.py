"""meshkit.coord: distributed locks with fencing tokens, and leader election (issue 15; in progress)."""
