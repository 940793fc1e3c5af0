"""Edge circuits: the positioned edge graph (`graph`), the edge-masked forward (`forward`), exact and attribution
scores (`scores`), discovery (`discovery`) and MIB / EAP-IG JSON (`export`)."""

from arithlens.analysis.edges.graph import Edge, EdgeGraph, Receiver, Sender, parse_edge

__all__ = ["Edge", "EdgeGraph", "Receiver", "Sender", "parse_edge"]
