//! Geographic cells: the coarse places that area requests address (spec/wire.md#cells).
//!
//! A node that opts in to area requests is known to the mesh only by the cell it sits in,
//! never by its coordinates. A cell is a 1/100-degree square of latitude and longitude (about
//! 1.1 km north-south; narrower east-west away from the equator), named by the integer
//! indices `floor(lat * 100)` and `floor(lon * 100)`. Integer names make cells exact to
//! compare and to put in a gossip topic; the only floating point is in turning a user's
//! coordinates and radius into cells.

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::validate::MAX_CELLS_PER_REQUEST;

/// Cells per degree.
pub const CELLS_PER_DEGREE: f64 = 100.0;
/// The largest radius an area request may cover, in metres.
pub const MAX_AREA_RADIUS_M: f64 = 5_000.0;
const METRES_PER_DEGREE_LAT: f64 = 111_320.0;

/// One geographic cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellId {
    pub lat_index: i32,
    pub lon_index: i32,
}

fn check_coordinates(lat: f64, lon: f64) -> Result<(), ValidationError> {
    if !(lat.is_finite()
        && lon.is_finite()
        && (-90.0..=90.0).contains(&lat)
        && (-180.0..=180.0).contains(&lon))
    {
        return Err(ValidationError::BadCoordinates);
    }
    Ok(())
}

/// Highest latitude index: latitude 90 belongs to the last row of cells.
const MAX_LAT_INDEX: i32 = 8_999;
/// Longitude 180 is the same meridian as -180, so it names the first column.
const LON_INDEX_SPAN: i32 = 36_000;

fn lat_index(lat: f64) -> i32 {
    // In range by check_coordinates: |lat * 100| <= 9000.
    ((lat * CELLS_PER_DEGREE).floor() as i32).min(MAX_LAT_INDEX)
}

fn lon_index(lon: f64) -> i32 {
    let index = (lon * CELLS_PER_DEGREE).floor() as i32;
    if index >= LON_INDEX_SPAN / 2 {
        index - LON_INDEX_SPAN
    } else {
        index
    }
}

impl CellId {
    /// The cell holding a point.
    pub fn containing(lat: f64, lon: f64) -> Result<CellId, ValidationError> {
        check_coordinates(lat, lon)?;
        Ok(CellId {
            lat_index: lat_index(lat),
            lon_index: lon_index(lon),
        })
    }

    /// Whether the indices name a cell on Earth.
    pub fn is_valid(&self) -> bool {
        (-9000..=MAX_LAT_INDEX).contains(&self.lat_index)
            && (-18000..18000).contains(&self.lon_index)
    }

    /// The gossip topic of this cell.
    pub fn topic(&self) -> String {
        format!("porchlight/v1/cell/{}/{}", self.lat_index, self.lon_index)
    }
}

/// The cells that a circle of `radius_m` metres around a point touches (by bounding box),
/// or an error if that is more than a request may name.
pub fn cells_covering(lat: f64, lon: f64, radius_m: f64) -> Result<Vec<CellId>, ValidationError> {
    check_coordinates(lat, lon)?;
    if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= MAX_AREA_RADIUS_M) {
        return Err(ValidationError::NotAllowed {
            what: "area radius",
            why: "must be more than 0 and at most 5000 m",
        });
    }
    let dlat = radius_m / METRES_PER_DEGREE_LAT;
    let dlon = radius_m / (METRES_PER_DEGREE_LAT * lat.to_radians().cos().max(1e-6));
    let lat_range = lat_index((lat - dlat).max(-90.0))..=lat_index((lat + dlat).min(90.0));
    // Areas that would cross the antimeridian are clipped at it (no city needs both sides).
    let lon_range = ((lon - dlon).max(-180.0) * CELLS_PER_DEGREE).floor() as i32
        ..=(((lon + dlon).min(180.0) * CELLS_PER_DEGREE).floor() as i32)
            .min(LON_INDEX_SPAN / 2 - 1);
    let count = lat_range
        .clone()
        .count()
        .saturating_mul(lon_range.clone().count());
    if count > MAX_CELLS_PER_REQUEST {
        return Err(ValidationError::TooMany {
            field: "cells",
            count,
            max: MAX_CELLS_PER_REQUEST,
        });
    }
    let mut cells = Vec::with_capacity(count);
    for lat_index in lat_range {
        for lon_index in lon_range.clone() {
            cells.push(CellId {
                lat_index,
                lon_index,
            });
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containing_floors_toward_negative_infinity() {
        assert_eq!(
            CellId::containing(52.5201, 13.4049).unwrap(),
            CellId {
                lat_index: 5252,
                lon_index: 1340
            }
        );
        assert_eq!(
            CellId::containing(-0.001, -0.001).unwrap(),
            CellId {
                lat_index: -1,
                lon_index: -1
            }
        );
        assert!(CellId::containing(91.0, 0.0).is_err());
        assert!(CellId::containing(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn covering_includes_the_centre_and_is_bounded() {
        let centre = CellId::containing(52.5201, 13.4049).unwrap();
        let cells = cells_covering(52.5201, 13.4049, 500.0).unwrap();
        assert!(cells.contains(&centre));
        assert!(cells.len() <= 9, "{}", cells.len());
        assert!(cells_covering(52.5, 13.4, 0.0).is_err());
        assert!(cells_covering(52.5, 13.4, 50_000.0).is_err());
        // Near the pole a small radius spans too many longitudes.
        assert!(cells_covering(89.99, 0.0, 4_000.0).is_err());
    }

    #[test]
    fn poles_and_the_antimeridian_have_one_name() {
        assert_eq!(
            CellId::containing(90.0, 180.0).unwrap(),
            CellId {
                lat_index: 8999,
                lon_index: -18000
            }
        );
        assert_eq!(CellId::containing(0.0, -180.0).unwrap().lon_index, -18000);
        assert!(
            !CellId {
                lat_index: 0,
                lon_index: 18000
            }
            .is_valid()
        );
        assert!(
            !CellId {
                lat_index: 9000,
                lon_index: 0
            }
            .is_valid()
        );
        assert!(
            cells_covering(10.0, 179.999, 1000.0)
                .unwrap()
                .iter()
                .all(CellId::is_valid)
        );
    }

    #[test]
    fn topic_names_the_cell() {
        let cell = CellId {
            lat_index: -1,
            lon_index: 2,
        };
        assert_eq!(cell.topic(), "porchlight/v1/cell/-1/2");
    }
}
