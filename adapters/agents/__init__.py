"""Talking to DataMiner Agents: the HTTP gateway, the simulated gateway and the agent simulator."""
