"""The edge's dashboard: an account's sockets, tunnels, traffic, quotas and certificates on
``https://<api-name>/dashboard/`` (edge/README.md, "The dashboard").

``sampler`` reads the data plane's metrics into bounded rings, ``sessions``
signs cookies and CSRF tokens, ``views`` decides what a viewer may see,
``render`` writes the HTML and the SVG chart, ``pages`` serves it all.
"""
