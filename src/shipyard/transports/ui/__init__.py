"""The web UI: a face on the management API, served by `shipyard server` at `/`.

`routes.router` serves the page and its static assets (vendored uPlot included; nothing is
fetched from elsewhere at run time) and the session endpoints under /api/v1/session, which
turn an API key into an HttpOnly cookie. The page itself reads and changes everything through
the /api/v1 endpoints, like any other client. This module stays empty: the API's security
dependency imports `cookies` from here, and must not import the routers back.
"""
