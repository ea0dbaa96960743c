/*
 * notification.pml -- seL4 notification semantics, as the host board must
 * emulate them with a shared word and a futex.
 *
 * seL4: a notification object holds a word of badge bits. Signal ORs the
 * sender's badge into the word (signals coalesce: two Signals before a Wait
 * are seen once). Wait blocks while the word is zero, then returns the whole
 * word and clears it.
 *
 * Emulation modelled here (two signallers with badges 1 and 2, one waiter):
 *   Signal(b): fetch_or(word, b); futex_wake(word)
 *   Wait():    loop { w = swap(word, 0); if w != 0 return w;
 *                     futex_wait(word, 0) }   -- sleeps only if word == 0,
 *                                                atomically in the kernel
 *
 * Properties (proofs/README.md):
 *   assertions        a Wait never returns 0; no badge is returned more often
 *                     than it was signalled (coalescing, never invention)
 *   no_lost_signal    a pending badge is always eventually taken by a Wait
 *
 * Seeded bug, which spin must show failing:
 *   -DBUG_UNCHECKED_SLEEP   futex_wait sleeps without re-checking the word
 *                           (a plain "sleep until woken"), so a Signal between
 *                           the waiter's swap and its sleep is lost
 */

#ifndef SIGNALS
#define SIGNALS 2            /* signals sent by each signaller */
#endif

byte word = 0;               /* the notification word */
bit sleeping = 0;            /* waiter is blocked in futex_wait */
byte sent[3];                /* Signals per badge (index 1, 2) */
byte got[3];                 /* Waits that returned each badge */

inline signal(b) {
    atomic { word = word | b; sent[b]++ }    /* fetch_or (sent: ghost) */
    atomic { if :: sleeping -> sleeping = 0 :: else fi }   /* futex_wake */
}

proctype signaller(byte b)
{
    byte n = 0;
    do
    :: n < SIGNALS -> signal(b); n++
    :: else -> break
    od
}

active proctype waiter()
{
    byte w;
end_loop:
    do
    :: atomic { w = word; word = 0 };   /* swap */
        if
        :: w != 0 ->                    /* Wait returns w */
            assert(w != 0);
            if :: w & 1 -> got[1]++ :: else fi;
            if :: w & 2 -> got[2]++ :: else fi;
            assert(got[1] <= sent[1] && got[2] <= sent[2]);
            w = 0
        :: else ->
#ifdef BUG_UNCHECKED_SLEEP
            sleeping = 1;
#else
            atomic { if :: word == 0 -> sleeping = 1 :: else fi };
#endif
end_sleep:  (sleeping == 0)             /* blocked until futex_wake */
        fi
    od
}

init {
    atomic { run signaller(1); run signaller(2) }
}

ltl no_lost_signal { [] ((word != 0) -> <> (word == 0)) }
