"""The live lab in the browser (``gradientflow lab``): pick a data set, a depth, an activation, an
initialiser and an optimiser, press play, and watch the probes' statistics, the theory's prediction
and the findings move while the net trains. ``session``: one set-up training on its own thread;
``server``: the Starlette app (WebSockets) and the page's static files."""
