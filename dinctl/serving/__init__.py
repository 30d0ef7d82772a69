"""Serving a trained run: export bundles, batch prediction and an HTTP service.

scorer.py   the request-shaped forward (user side once, broadcast over candidates)
vocab.py    raw ids → model ids, histories of known users, OOV rules
fields.py   the fields beyond item/category: raw values → ids, defaults, numeric scaling
errors.py   RequestError, a refused request (its HTTP status)
bundle.py   the export bundle folder (one reader/writer)
runtime.py  open a RUN or a BUNDLE as a `ServingModel` (eager, torch.export or ONNX Runtime)
export.py   `dinctl export`: write a bundle and check its parity with the eager model
predict.py  `dinctl predict`: stream a request file into a Parquet of scores
server.py   `dinctl serve`: FastAPI app, limits, dynamic batching
"""
