"""Client for jobqueue, a durable job queue whose jobs are HTTP calls.

``jobqueue.v1`` holds the messages and service stubs generated from the API's protos;
``jobqueue.client`` the helpers over them (``Client``, ``JobqueueError``, JSON bodies).
"""
