#include "CTroupeCallgrind.h"

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#include <valgrind/valgrind.h>
int troupe_callgrind_available(void) { return 1; }
int troupe_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }
void troupe_callgrind_zero(void) { CALLGRIND_ZERO_STATS; }
void troupe_callgrind_dump(const char *reason) { CALLGRIND_DUMP_STATS_AT(reason); }
#else
int troupe_callgrind_available(void) { return 0; }
int troupe_running_on_valgrind(void) { return 0; }
void troupe_callgrind_zero(void) {}
void troupe_callgrind_dump(const char *reason) { (void)reason; }
#endif
