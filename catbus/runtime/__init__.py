"""One node's side of a run: the socket-free driver every runner shares, the inbox that selects its
inputs, the schedule, and the process runtime with its sockets and run loops."""
