"""The verifier process (SPEC §17): the caching verifier as a service of its own, one per host
or per gateway, for workloads in any language. Gateways (nginx `auth_request`, Caddy
`forward_auth`, Traefik, Envoy) ask `/v1/forward-auth`; local services ask `/v1/check`.

- `config`: its settings and `[[route]]` tables;
- `routes`: path normalisation and which access a request asks for;
- `gateways`: each gateway's account of the original request;
- `app`: the HTTP API; `metrics`: its counters.
"""
