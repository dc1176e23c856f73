import {
  createClient,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";

import { Authenticator } from "../auth/authenticator";
import { SessionStore } from "../auth/session";
import { CommsService } from "../gen/retain/comms/v1/comms_pb";
import { EventsService } from "../gen/retain/events/v1/events_pb";
import { InferenceService } from "../gen/retain/inference/v1/inference_pb";
import { UserService } from "../gen/retain/user/v1/user_pb";
import { authInterceptor } from "./interceptor";

/** One client per service, and the authenticator whose token they send. */
export interface Api {
  users: Client<typeof UserService>;
  inference: Client<typeof InferenceService>;
  events: Client<typeof EventsService>;
  comms: Client<typeof CommsService>;
  auth: Authenticator;
}

/**
 * Builds the clients on one transport that carries the auth interceptor.
 *
 * The application calls it once (see clients.ts); tests pass an in-memory
 * transport from createRouterTransport.
 */
export function createApi(
  makeTransport: (interceptors: Interceptor[]) => Transport,
): Api {
  // The authenticator reaches UserService through the transport that it
  // authenticates, so it reads the client lazily, once calls are made.
  const auth = new Authenticator(new SessionStore(), () => users);
  const transport = makeTransport([authInterceptor(auth)]);
  const users = createClient(UserService, transport);
  auth.resume();
  return {
    users,
    inference: createClient(InferenceService, transport),
    events: createClient(EventsService, transport),
    comms: createClient(CommsService, transport),
    auth,
  };
}
