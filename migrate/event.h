/* MIGRATION events (util/events.h) from both sides of a live migration. */
#pragma once

/* side: "source" or "destination"; state: a fixed name ("active", "device", "completed",
 * "failed", "cancelled"; "waiting", "receiving", "refused"); error: a reason (any text,
 * serialised by json-c) or NULL; uri: the peer's address or NULL. */
void mig_event(const char *side, const char *state, const char *error, const char *uri);
