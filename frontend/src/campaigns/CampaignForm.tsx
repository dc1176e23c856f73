import {
  useState,
  type ChangeEvent,
  type FormEvent,
  type ReactNode,
} from "react";

import { errorText } from "../api/load";
import type { CampaignSpec } from "../gen/retain/comms/v1/comms_pb";
import { ChannelSchema, PurposeSchema } from "../gen/retain/type/v1/channel_pb";
import { enumChoices } from "../format/enums";
import {
  DEFAULT_CAMPAIGN_FORM,
  parseCampaignForm,
  type CampaignFormErrors,
  type CampaignFormValues,
} from "./campaignForm";

type Field = keyof CampaignFormValues;

/**
 * Renders the create-campaign form. It checks the inputs, converts them to a
 * CampaignSpec and passes that to `onSubmit`. When the promise rejects, the
 * server's message appears under the form.
 */
export function CampaignForm({
  onSubmit,
  initial = DEFAULT_CAMPAIGN_FORM,
}: {
  onSubmit: (spec: CampaignSpec) => Promise<void>;
  initial?: CampaignFormValues;
}) {
  const [values, setValues] = useState(initial);
  const [errors, setErrors] = useState<CampaignFormErrors>({});
  const [serverError, setServerError] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);

  const change =
    (field: Field, asNumber = false) =>
    (event: ChangeEvent<HTMLInputElement | HTMLSelectElement>) => {
      const raw = event.target.value;
      setValues((previous) => ({
        ...previous,
        [field]: asNumber ? Number(raw) : raw,
      }));
    };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const result = parseCampaignForm(values);
    if (!result.ok) {
      setErrors(result.errors);
      return;
    }
    setErrors({});
    setServerError(null);
    setSaving(true);
    try {
      await onSubmit(result.spec);
    } catch (error) {
      setServerError(errorText(error));
    } finally {
      setSaving(false);
    }
  };

  const text = (field: Field, label: string, hint?: string, type = "text") => (
    <Labelled field={field} label={label} hint={hint} error={errors[field]}>
      <input
        id={field}
        type={type}
        value={String(values[field])}
        onChange={change(field)}
        aria-invalid={errors[field] !== undefined}
        aria-describedby={
          errors[field] !== undefined ? `${field}-error` : undefined
        }
      />
    </Labelled>
  );

  return (
    <form className="form" onSubmit={(event) => void submit(event)} noValidate>
      {text("name", "Name")}
      {text("minChurnProbability", "Churn probability threshold", "0 to 1")}
      {text(
        "holdoutShare",
        "Holdout share",
        "0 to 0.5, kept as the control group",
      )}
      {text("budgetKes", "Budget (KES)")}
      {text(
        "sendWindowStart",
        "Send window start",
        "HH:MM, Nairobi time",
        "time",
      )}
      {text("sendWindowEnd", "Send window end", "HH:MM, exclusive", "time")}
      {text("capMaxMessages", "Frequency cap: max messages", "0 means no cap")}
      {text("capPeriodDays", "Frequency cap: period (days)")}
      <Labelled field="channel" label="Channel" error={errors.channel}>
        <select
          id="channel"
          value={values.channel}
          onChange={change("channel", true)}
        >
          {enumChoices(ChannelSchema).map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
      </Labelled>
      <Labelled field="purpose" label="Purpose" error={errors.purpose}>
        <select
          id="purpose"
          value={values.purpose}
          onChange={change("purpose", true)}
        >
          {enumChoices(PurposeSchema).map((choice) => (
            <option key={choice.value} value={choice.value}>
              {choice.label}
            </option>
          ))}
        </select>
      </Labelled>
      {text(
        "offer",
        "Offer",
        "The only offer the message may make; empty for none",
      )}
      {text("maxSegments", "Max SMS parts", "1 to 3")}
      {text("brandName", "Brand name", "Signs the message")}
      <div className="actions">
        <button type="submit" disabled={saving}>
          {saving ? "Creating…" : "Create campaign"}
        </button>
      </div>
      {serverError !== null && (
        <p role="alert" className="error">
          {serverError}
        </p>
      )}
    </form>
  );
}

function Labelled({
  field,
  label,
  hint,
  error,
  children,
}: {
  field: Field;
  label: string;
  hint?: string;
  error?: string;
  children: ReactNode;
}) {
  return (
    <div className="field">
      <label htmlFor={field}>{label}</label>
      {children}
      {hint !== undefined && <small className="muted">{hint}</small>}
      {error !== undefined && (
        <small id={`${field}-error`} className="error">
          {error}
        </small>
      )}
    </div>
  );
}
