"""The HTTP API: routes (router), typed requests (protocol), uploads, the work (serving), one error mapping."""
