"""Serving a live stream, in the order a line travels: `reader` cuts bytes into lines, `input` parses
lines into `observations` (`detect` tells the format, `csvlines` and `jsonlines` find the fields by
the `layout`, `fields` checks each field, `times` reads timestamps), `engine` runs each
micro-batch: `rules` apply the per-line rules (or `steady` plans a steady batch in whole arrays on the
model's `grid`, under a `config`), then `advance` runs the network over each series' carried state
and forecasts; `state` keeps and checkpoints those states, `output` formats the forecasts, `session`
runs the loop (signals, checkpoints, flushing).

The public names stay on the top package (`from streamcast import stream, StreamState`); there
`streamcast.stream` is the generator function, so import the modules with
`from streamcast.stream import engine` or `from streamcast.stream.engine import ...`.
"""
