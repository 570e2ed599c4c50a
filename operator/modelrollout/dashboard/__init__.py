"""`modelrollout dashboard`: a local web page of the rollouts, live, served as the kubeconfig's identity.

Imported only by that command (`modelrollout run` loads none of it, nor starlette or uvicorn):
`view` turns rollouts into what the pages show (pure), `store` keeps them current from a watch,
`app` serves the pages, their JSON and a server-sent event stream, `serve` runs it with uvicorn.
"""
