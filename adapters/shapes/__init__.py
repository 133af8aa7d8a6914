"""The public data shapes the API and the command line share (bodies of requests and answers), below both."""
