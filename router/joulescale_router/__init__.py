"""joulescale-router: sends each request to a prefill endpoint with one output token, then to a
decode endpoint with the prefill's KV transfer parameters, and streams the decode's answer."""
