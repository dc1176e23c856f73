import { createGrpcWebTransport } from "@connectrpc/connect-web";

import { createApi } from "./api";
import { gatewayUrl } from "./gateway";

/**
 * The dashboard's clients, created once. They speak gRPC-web (binary) to
 * Envoy, which translates it to gRPC for the services.
 */
export const api = createApi((interceptors) =>
  createGrpcWebTransport({ baseUrl: gatewayUrl(), interceptors }),
);
