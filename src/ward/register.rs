//! Civil-status registration at a ward (`WardApi.Register`): a marriage,
//! divorce or death, registered by this ward whoever owns the records of
//! the persons concerned; a correction of the name, date of birth or sex of
//! one of its own citizens. This ward's citizens are read from its own copy
//! (so a registration among them works offline, and the city re-checks it
//! as it merges); another ward's citizen is read from the city, which must
//! be reachable: a registration is never queued unchecked. Every record
//! concerned is written in one atomic, durable write; another ward's
//! record as a change built on its state at the city, which the city
//! accepts only as a registration and passes on to the owning ward.

use tonic::Request;

use super::{LocalApi, WardError};
use crate::clock::today;
use crate::model::civil::Registration;
use crate::model::{Body, Citizen, Kind, Record, RecordKey, ValidationError, Versioned};
use crate::proto::pb;
use crate::proto::{record_from_pb, versioned_from_pb};
use crate::store::NewChange;

/// The registration a request asks for, or what is wrong with it.
fn registration(req: &pb::RegisterRequest) -> Result<Registration, ValidationError> {
    let date =
        crate::model::strict::date::parse(&req.date).map_err(|e| ValidationError::single("date", e))?;
    let ids = |n: usize, what: &str| -> Result<Vec<String>, ValidationError> {
        if req.persons.len() != n {
            return Err(ValidationError::single("persons", format!("a {} names {what}", req.kind)));
        }
        for id in &req.persons {
            RecordKey::new(Kind::Citizen, id)
                .map_err(|e| ValidationError::single("persons", e.to_string()))?;
        }
        Ok(req.persons.clone())
    };
    match req.kind.as_str() {
        "marriage" | "divorce" => {
            let p = ids(2, "both spouses")?;
            let spouses = [p[0].clone(), p[1].clone()];
            Ok(if req.kind == "marriage" {
                Registration::Marriage { spouses, date }
            } else {
                Registration::Divorce { spouses, date }
            })
        }
        "death" => Ok(Registration::Death { person: ids(1, "the deceased")?.remove(0), date }),
        "correction" => {
            let person = ids(1, "the person corrected")?.remove(0);
            if req.reference.trim().is_empty() {
                return Err(ValidationError::single(
                    "reference",
                    "a correction names the decision it is registered on",
                ));
            }
            let value = crate::model::strict::nfc(req.value.trim());
            Ok(Registration::Correction { person, field: req.field.clone(), value, date })
        }
        other => Err(ValidationError::single(
            "kind",
            format!("{other:?} is not one of: marriage, divorce, death, correction"),
        )),
    }
}

impl LocalApi {
    /// The citizen `id`: from this ward's copy if it owns the record, else
    /// from the city with the state the change will be built on.
    async fn person(&self, id: &str, kind: &str) -> Result<(Citizen, Option<Versioned>), WardError> {
        let key = RecordKey::new(Kind::Citizen, id)?;
        if let Some(Record { ward, body: Body::Citizen(c) }) = self.store.get(&key)?
            && ward == self.ward
        {
            return Ok((c, None));
        }
        let unreachable = |why: String| {
            WardError::CityUnreachable(format!(
                "{id} is not a citizen of ward {}: registering this {kind} needs the city-wide view ({why}); \
                 nothing was registered, try again once the city can be reached",
                self.ward
            ))
        };
        let mut city = self.city().await.map_err(|e| match e {
            WardError::CityUnreachable(why) => unreachable(why),
            other => other,
        })?;
        let mut request = Request::new(pb::CityGetRequest { key: Some((&key).into()), ..Default::default() });
        request.set_timeout(super::api::LOOKUP_TIMEOUT);
        let reply = match city.get_state(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Err(WardError::NotFoundInCity(key)),
            Err(s) => return Err(unreachable(s.message().to_string())),
        };
        let Some(record) = reply.record else { return Err(WardError::NotFoundInCity(key)) };
        let record = record_from_pb(Some(record))
            .map_err(|e| unreachable(format!("the city sent a bad record: {e}")))?;
        let Body::Citizen(c) = record.body else { return Err(WardError::NotFoundInCity(key)) };
        Ok((c, Some(versioned_from_pb(reply.state.unwrap_or_default()))))
    }

    /// Registers what `req` asks for (see the module documentation).
    pub(super) async fn register_civil(
        &self,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterReply, WardError> {
        let registration = registration(&req)?;
        let mut found = Vec::new();
        for id in registration.persons() {
            found.push(self.person(id, &req.kind).await?);
        }
        if let (Registration::Correction { person, .. }, [(_, Some(state))]) =
            (&registration, found.as_slice())
        {
            return Err(WardError::RegistrarRefused(format!(
                "{person} is a citizen of ward {}, not of ward {}: a correction is registered by the ward \
                 the person lives in",
                state.owner_value().unwrap_or_default(),
                self.ward
            )));
        }
        let citizens: Vec<&Citizen> = found.iter().map(|(c, _)| c).collect();
        if let Some(why) = registration.refusal(&citizens, today()) {
            return Err(WardError::RegistrarRefused(why));
        }
        let current: Vec<Citizen> = found.iter().map(|(c, _)| c.clone()).collect();
        let mut updated = registration.apply(&current, &self.ward, &req.reference);
        let mut notes = Vec::new();
        // A death ends the marriage: the surviving spouse's record says so.
        if let (Registration::Death { .. }, [deceased]) = (&registration, current.as_slice())
            && let Some(spouse) = crate::model::civil::current_spouse(deceased)
        {
            match self.person(spouse, &req.kind).await {
                Ok((survivor, base)) => {
                    if let Some(widowed) =
                        registration.widowed(deceased, &survivor, &self.ward, &req.reference)
                    {
                        updated.push(widowed);
                        found.push((survivor, base));
                    }
                }
                // A spouse the city has no record of: nothing to end.
                Err(WardError::NotFoundInCity(_)) => {}
                // This ward's own resident's death is registered offline
                // too; the spouse's record is left as it was.
                Err(WardError::CityUnreachable(why)) => {
                    tracing::warn!(ward = %self.ward, %why,
                        "the deceased's spouse is another ward's citizen and the city cannot be reached: the death is registered, the spouse's record is not marked widowed");
                    notes.push(format!(
                        "the spouse {spouse} is another ward's citizen and the city cannot be reached: their \
                         record is not marked widowed; ask the data office to correct it"
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        let (mut changes, mut records) = (Vec::new(), Vec::new());
        for (citizen, (_, base)) in updated.into_iter().zip(found) {
            let key = RecordKey::new(Kind::Citizen, &citizen.personal_id)?;
            let owner = base
                .as_ref()
                .and_then(|state| crate::model::WardCode::parse(&state.owner_value()?).ok())
                .unwrap_or_else(|| self.ward.clone());
            let record = Record { ward: owner, body: Body::Citizen(citizen) };
            // A corrected record is still a valid one (a personal id says
            // the date of birth and sex it was issued for).
            if let Registration::Correction { .. } = registration {
                record.validate_content(&self.context())?;
            }
            records.push(pb::Record::from(&record));
            changes.push(match base {
                None => NewChange::put(key, record),
                Some(state) => NewChange::foreign(key, record, state),
            });
        }
        let seqs = self.writer.write_all(changes).await?;
        tracing::info!(ward = %self.ward, kind = %req.kind, ?seqs, "civil-status registration written");
        tracing::debug!(persons = ?req.persons, reference = %req.reference, "registration of");
        Ok(pb::RegisterReply { seqs, records, notes })
    }
}
