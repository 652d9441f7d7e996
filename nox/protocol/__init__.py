"""What the services and the SDK share of the protocol itself (DESIGN §4-§8).

A service package is never a library for another one: what two services both need to speak
the protocol lives here. Today: the errors whose reasons several services report
(`nox.protocol.exceptions`).
"""
