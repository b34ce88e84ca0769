"""The run as a process of its own: its control socket, status file and the viewers' end."""
