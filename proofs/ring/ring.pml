/*
 * ring.pml -- the need_signal notification protocol of bulkhead-ring
 * (components/ring/src/spsc.rs): one producer, one consumer, one ring,
 * and an seL4 notification between them (one pending bit: signals coalesce,
 * Wait blocks until the bit is set and clears it).
 *
 * Consumer (Consumer::pop, Consumer::arm_signal, then Wait):
 *     pop until empty; need_signal = 1; FENCE; if ring non-empty
 *     { need_signal = 0; continue } else Wait
 * Producer (Producer::push, Producer::notify_needed):
 *     wait for space; write slot; tail++ (release); FENCE;
 *     if need_signal { need_signal = 0; Signal }
 *
 * Promela runs statements in a sequentially consistent interleaving: that is
 * what the two SeqCst fences buy in the real code for the store-load pairs
 * that matter (need_signal store -> tail load, tail store -> need_signal
 * load). BUG_NO_FENCE drops that guarantee for the consumer by modelling a
 * store buffer.
 *
 * Properties (proofs/README.md):
 *   assertions        no item lost, duplicated or overwritten (in-order values)
 *   no_lost_wakeup    the consumer never sleeps forever while the ring is
 *                     non-empty
 *   all_delivered     every item is eventually consumed
 *
 * Seeded bugs, each of which spin must show failing:
 *   -DBUG_NO_RECHECK     consumer sleeps right after setting need_signal
 *   -DBUG_CHECK_FIRST    producer checks need_signal before publishing
 *   -DBUG_NO_FENCE       consumer's need_signal store may become visible
 *                        after its re-check of the ring (store buffer)
 */

#ifndef NITEMS
#define NITEMS 5
#endif
#ifndef CAP
#define CAP 2
#endif

byte tail = 0;          /* producer's free-running index (published) */
byte head = 0;          /* consumer's free-running index */
byte slot[CAP];
bit need_signal = 0;    /* consumer wants a notification */
bit pending = 0;        /* the notification's pending bit */
bit asleep = 0;         /* consumer is in (or about to enter) Wait */
byte consumed = 0;      /* items taken, in order */
#ifdef BUG_NO_FENCE
bit sb_need_signal = 0; /* consumer's store buffer holds need_signal = 1 */
#endif

#define nonempty (tail != head)

active proctype producer()
{
    byte i = 0;
    bit asked;
    do
    :: i < NITEMS ->
        (tail - head < CAP);            /* wait for space */
#ifdef BUG_CHECK_FIRST
        asked = need_signal;
        if
        :: asked -> need_signal = 0
        :: else -> skip
        fi;
#endif
        slot[tail % CAP] = i;
        tail++;                         /* publish (release store) */
#ifndef BUG_CHECK_FIRST
        /* FENCE */
        asked = need_signal;
        if
        :: asked -> need_signal = 0
        :: else -> skip
        fi;
#endif
        if
        :: asked -> pending = 1         /* seL4_Signal */
        :: else -> skip
        fi;
        asked = 0;
        i++
    :: else -> break
    od
}

active proctype consumer()
{
    byte v;
    do
    :: nonempty ->                      /* pop: copy the slot out */
        v = slot[head % CAP];
        assert(v == consumed);          /* no loss, duplicate or overwrite */
        consumed++;
        head++
    :: !nonempty ->                     /* empty: arm_signal */
#ifdef BUG_NO_FENCE
        sb_need_signal = 1;             /* store sits in the store buffer */
#else
        need_signal = 1;
        /* FENCE */
#endif
#ifndef BUG_NO_RECHECK
        if
        :: nonempty ->                  /* Armed::Pending */
#ifdef BUG_NO_FENCE
            /* the buffered store drains later and is then withdrawn */
            (sb_need_signal == 0);
#endif
            need_signal = 0
        :: else ->                      /* Armed::MaySleep */
#endif
            asleep = 1;
end_wait:   atomic { pending -> pending = 0; asleep = 0 }   /* seL4_Wait */
#ifndef BUG_NO_RECHECK
        fi
#endif
    od
}

#ifdef BUG_NO_FENCE
/* The store buffer drains at some arbitrary later moment. */
active proctype store_buffer()
{
end_sb:
    do
    :: atomic { sb_need_signal -> need_signal = 1; sb_need_signal = 0 }
    od
}
#endif

ltl no_lost_wakeup { [] ((asleep && nonempty) -> <> !asleep) }
ltl all_delivered  { <> (consumed == NITEMS) }
