import { useAction } from "../api/action";
import { useApi, useSession } from "../api/context";
import { ErrorNotice } from "../components/states";
import {
  EncodingSchema,
  MessageStateSchema,
  type PreviewMessagesResponse,
  type SendTestMessageResponse,
} from "../gen/retain/comms/v1/comms_pb";
import { Role } from "../gen/retain/user/v1/user_pb";
import { enumLabel } from "../format/enums";
import { formatMoney } from "../format/money";

/** Shows sample texts per language with their SMS parts and unit cost, and sends tests. */
export function PreviewPanel({ campaignId }: { campaignId: bigint }) {
  const { comms } = useApi();
  const session = useSession();
  const [previews, loadPreviews] = useAction<PreviewMessagesResponse>();
  const [testSend, sendTest] = useAction<SendTestMessageResponse>();
  const readOnly = session?.admin.role !== Role.ADMIN;

  return (
    <section>
      <h2>Message previews</h2>
      <button
        type="button"
        disabled={previews.status === "busy"}
        onClick={() =>
          void loadPreviews(() => comms.previewMessages({ campaignId }))
        }
      >
        {previews.status === "busy" ? "Writing previews…" : "Preview messages"}
      </button>
      {previews.status === "failed" && <ErrorNotice error={previews.error} />}
      {previews.status === "done" && previews.data.previews.length === 0 && (
        <p className="empty">The campaign has no previews.</p>
      )}
      {previews.status === "done" && previews.data.previews.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Language</th>
              <th>Text</th>
              <th>Encoding</th>
              <th>SMS parts</th>
              <th>Unit cost</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {previews.data.previews.map((preview) => (
              <tr key={preview.language}>
                <td>{preview.language}</td>
                <td className="message-text">{preview.text}</td>
                <td>{enumLabel(EncodingSchema, preview.encoding)}</td>
                <td>{preview.segments}</td>
                <td>{formatMoney(preview.unitCost, 4)}</td>
                <td>
                  <button
                    type="button"
                    disabled={readOnly || testSend.status === "busy"}
                    onClick={() =>
                      void sendTest(() =>
                        comms.sendTestMessage({
                          campaignId,
                          language: preview.language,
                        }),
                      )
                    }
                  >
                    Send test to my phone
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {testSend.status === "failed" && <ErrorNotice error={testSend.error} />}
      {testSend.status === "done" && (
        <p role="status">
          Test message {testSend.data.message?.messageId.toString() ?? ""} is{" "}
          {enumLabel(
            MessageStateSchema,
            testSend.data.message?.state ?? 0,
          ).toLowerCase()}
          .
        </p>
      )}
    </section>
  );
}
