"""The explorer: a local web page over a P2P model (``p2pvision explore``); see :mod:`p2pvision.explore.server`."""
