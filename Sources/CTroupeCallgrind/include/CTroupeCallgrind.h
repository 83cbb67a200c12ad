// Callgrind's client requests for `troupe bench actors --instructions`: zero the counters before a measured
// section and write a named dump after it. Without valgrind's headers at build time, or outside valgrind, they
// do nothing (troupe_callgrind_available says which).
#ifndef C_TROUPE_CALLGRIND_H
#define C_TROUPE_CALLGRIND_H

/// 1 when built with valgrind's headers (the requests are real), 0 when they are no-ops.
int troupe_callgrind_available(void);
/// Non-zero when the process runs under valgrind.
int troupe_running_on_valgrind(void);
/// Resets callgrind's event counters of every thread.
void troupe_callgrind_zero(void);
/// Writes callgrind's counters since the last reset to a dump file whose description names `reason`.
void troupe_callgrind_dump(const char *reason);

#endif
