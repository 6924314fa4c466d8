/* MIGRATION events: their data carries text from the network (a peer's refusal), so it is
 * built by json-c, never pasted. */
#include "migrate/event.h"

#include <json-c/json.h>

#include "util/events.h"

void mig_event(const char *side, const char *state, const char *error, const char *uri)
{
    if (events_fd() < 0)
        return;
    json_object *d = json_object_new_object();
    json_object_object_add(d, "side", json_object_new_string(side));
    json_object_object_add(d, "state", json_object_new_string(state));
    if (uri)
        json_object_object_add(d, "uri", json_object_new_string(uri));
    if (error)
        json_object_object_add(d, "error", json_object_new_string(error));
    events_post("MIGRATION", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(d);
}
