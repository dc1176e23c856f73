/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Origin of the Envoy gateway, for example "http://127.0.0.1:8080". */
  readonly VITE_GATEWAY_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
